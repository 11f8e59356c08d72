//! dolbom's wire protocol, generated from `proto/dolbom/v1` (package `dolbom.v1`).
//!
//! Owns: the protobuf messages that cross process boundaries — `PlugReading` on
//! `plug.readings`, `HouseholdConfig` on the compacted `care.households`,
//! `IncidentEvent` on `care.incidents` — and the municipality gRPC services
//! (`RegistryService`, `IncidentService`, `StatisticsService`).
//!
//! Data flow: plugs encode `PlugReading`; the monitor decodes readings and
//! configs and encodes incident events; notify serves the gRPC services. Domain
//! code never works on these types directly: `dolbom-domain` converts them into
//! validated domain types at the edge. Field numbers are a public contract.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("dolbom.v1");

    /// Encoded `FileDescriptorSet` of the `dolbom.v1` package, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("dolbom_v1_descriptor");
}

pub use prost;
pub use prost_types;

#[cfg(test)]
mod tests {
    use super::v1::*;
    use prost::Message;

    #[test]
    fn reading_round_trips_and_keeps_field_numbers() {
        let r = PlugReading {
            device_id: "plug-1".into(),
            household_id: "hh-1".into(),
            observed_at_ms: 1_700_000_000_000,
            watts: Some(42.5),
            lux: None,
            sequence: 7,
            current_amps: None,
        };
        let bytes = r.encode_to_vec();
        // Field 1 (device_id), wire type 2 (length-delimited) => tag byte 0x0a.
        assert_eq!(bytes[0], 0x0a);
        assert_eq!(PlugReading::decode(bytes.as_slice()).unwrap(), r);
    }

    #[test]
    fn descriptor_set_is_embedded() {
        assert!(FILE_DESCRIPTOR_SET.len() > 100);
    }
}
