//! Integration tests for `swarmcdn-proto`: captured wire bytes and files made by other
//! BitTorrent tools, parsed and compared.

mod fixtures;
