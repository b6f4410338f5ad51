//! io_uring file I/O service with a std fallback (placeholder: being written).
