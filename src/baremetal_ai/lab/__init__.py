"""The local lab: podman "nodes" with systemd and sshd, a Redfish BMC emulator and an apt cache."""
