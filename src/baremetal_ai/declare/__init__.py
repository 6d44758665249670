"""The declare stage: bring bare-metal servers under management as Pulumi resources.

Each backend (Redfish BMCs for owned/colocated servers today) turns a declared server into a resource whose
outputs carry the inventory (CPUs, memory, NICs, GPUs) that the later converge and validate stages consume.
"""
