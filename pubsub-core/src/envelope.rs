//! Placeholder, replaced by the envelope helper.
