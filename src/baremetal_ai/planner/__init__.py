"""`baremetal plan` (GPU memory and layout) and `baremetal tco` (cloud vs bare-metal cost)."""
