//! Node JSON-RPC types and client.
