"""Local FirecREST v2-compatible server over local directories.

It runs the same shell commands as the real FirecREST v2 server (as the local
user, without SSH), responds with the same status codes, error bodies, casing and
quirks, and adds test knobs under ``/_local/``. Start it with
``python -m firecrest_fs.server`` or through :class:`firecrest_fs.server.launch.LocalServer`.
"""
