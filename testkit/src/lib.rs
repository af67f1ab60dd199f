//! What the tests, CI and the benchmark share to run PostgreSQL without installing a server
//! of their own: a throwaway cluster on a free loopback port, in a temp dir it made, stopped
//! and removed when dropped ([`Cluster`]); and the free ports, fresh passwords and temp dirs
//! it is made with. The `test-postgres` program offers the same cluster to people and to CI
//! (`scripts/test-postgres.sh`).

mod postgres;
mod temp;

pub use postgres::{installed, stop_kept, Cluster, ClusterOptions, StartError, SUPERUSER};
pub use temp::{free_port, fresh_password, TempDir};
