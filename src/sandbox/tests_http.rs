//! Endpoint tests over real HTTP.
