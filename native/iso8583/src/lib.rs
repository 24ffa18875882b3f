//! ISO 8583 codec driven by specs as data (filled in by the codec work).
