//! Technical indicators over closes/candles (filled in by the indicators work).
