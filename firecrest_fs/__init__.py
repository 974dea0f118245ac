"""firecrest-fs: a FUSE filesystem that mounts HPC cluster files through the FirecREST v2 API."""

__version__ = "0.1.0"
