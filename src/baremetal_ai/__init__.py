"""baremetal-ai: declare, converge, validate and watch bare-metal GPU nodes."""

__version__ = "0.1.0"
