//! Test drivers: build single replicas over `MemLog`, hand-build their messages, and run a few
//! replicas in lockstep.

pub mod driver;
pub mod messages;
pub mod net;
pub mod timed;

pub use driver::*;
pub use messages::*;
pub use net::Net;
pub use timed::TimedNet;
