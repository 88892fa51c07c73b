//! Torrents made by other tools (mktorrent, transmission-create), parsed and compared.
