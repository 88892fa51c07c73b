//! Real BitTorrent clients (aria2, Transmission) finding each other through our tracker.
