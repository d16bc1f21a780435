//! Byte layout of Azure's HCL report (the IGVM attestation report an Azure confidential VM's
//! paravisor, the HCL, stores in the vTPM's NV), shared by the responder that reads it and the
//! verifiers that check it.
//!
//! Layout: a 32-byte header (`HCLA`, version, report size, request type, status, reserved),
//! the 1184-byte hardware report (for TDX the TDREPORT), then the runtime data header (data
//! size, version, report type, hash type, variable data size) and the variable data, a JSON
//! object naming the HCL's attestation key (`HCLAkPub`) and the guest's `user-data`. The
//! TDREPORT's REPORTDATA is SHA-256(variable data) followed by 32 zero bytes.

/// Largest HCL report a bundle may carry (real ones are 2600 bytes).
pub const MAX_HCL_REPORT_LEN: usize = 8 << 10;

/// The header's signature.
pub const SIGNATURE: &[u8; 4] = b"HCLA";
/// Length of the header before the hardware report.
pub const HEADER_LEN: usize = 32;
/// Length of the hardware report (SNP report or TDREPORT, padded).
pub const HW_REPORT_LEN: usize = 1184;
/// The runtime data header follows the hardware report.
pub const RUNTIME_HEADER_AT: usize = HEADER_LEN + HW_REPORT_LEN;
/// Length of the runtime data header.
pub const RUNTIME_HEADER_LEN: usize = 20;
/// The variable data (JSON) follows the runtime data header.
pub const VARIABLE_DATA_AT: usize = RUNTIME_HEADER_AT + RUNTIME_HEADER_LEN;
/// TDREPORT REPORTDATA (64 bytes) inside the HCL report: in REPORTMACSTRUCT, at 128.
pub const TD_REPORT_DATA_AT: usize = HEADER_LEN + 128;
/// TDREPORT TEE_TCB_INFO from TEE_TCB_SVN (112 bytes up to MRSIGNERSEAM).
pub const TD_TEE_TCB_AT: usize = HEADER_LEN + 256 + 8;
/// TDREPORT TDINFO from ATTRIBUTES (400 bytes up to RTMR3).
pub const TD_INFO_AT: usize = HEADER_LEN + 512;
/// Runtime data report type of TDX.
pub const REPORT_TYPE_TDX: u32 = 4;
/// Runtime data hash type SHA-256.
pub const HASH_TYPE_SHA256: u32 = 1;
/// Length of the `user-data` the guest writes (a hash; locus writes its 64-byte binding).
pub const USER_DATA_LEN: usize = 64;

/// The TDREPORT's REPORTDATA, which a TD quote over this HCL report carries; `None` when the
/// report is too short to hold it.
pub fn td_report_data(hcl: &[u8]) -> Option<[u8; 64]> {
    hcl.get(TD_REPORT_DATA_AT..TD_REPORT_DATA_AT + 64)?
        .try_into()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_needs_the_whole_field() {
        let mut hcl = vec![0u8; TD_REPORT_DATA_AT + 64];
        hcl[TD_REPORT_DATA_AT] = 7;
        assert_eq!(td_report_data(&hcl).map(|r| r[0]), Some(7));
        assert_eq!(td_report_data(&hcl[..hcl.len() - 1]), None);
        assert_eq!(td_report_data(&[]), None);
    }
}
