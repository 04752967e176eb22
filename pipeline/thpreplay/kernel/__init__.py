"""Kernel facts as data: gfp flag tables, tracepoint event specs, kernel version helpers."""
