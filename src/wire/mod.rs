//! The `sorcha.peer.v1` wire contract, shared by the hub's gRPC services (`api::grpc`, inbound)
//! and the gRPC hub client (`hub_client`, outbound): the generated types, their codec and the
//! conversions between them and the domain types of [`crate::protocol`].

pub mod codec;
pub mod convert;

/// Generated types and service traits of the `sorcha.peer.v1` contract.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("sorcha.peer.v1");

    /// Encoded file descriptor set of the contract, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/sorcha_descriptor.bin"));
}
