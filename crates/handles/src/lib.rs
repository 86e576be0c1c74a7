//! The Win32 handle model on Unix (contracts 2–5 of DESIGN.md): an NT handle is an fd its holder
//! owns, a KMT handle is a global value resolved through the broker, names are UTF-16 in a
//! per-user namespace. Filled in by the Win32 work; nothing here yet.
