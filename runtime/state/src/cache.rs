//! Cache API (in progress)
