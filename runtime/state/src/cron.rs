//! cron (in progress)
