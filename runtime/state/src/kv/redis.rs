//! redis (in progress)
