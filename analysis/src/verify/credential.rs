//! Credential activation: the proof that the AK lives in the TPM the EK certificate endorses
//! (`docs/binding.md`, "Credential activation"). The prober sealed the evidence nonce with
//! TPM2_MakeCredential to a certified EK for the AK's name
//! ([`locus_proto::credential::seal_nonce`]); only that TPM, holding that AK, could recover the
//! nonce the bundle's quotes are bound to. The bundle carries the sealed credential, which the
//! verifier recomputes from the nonce, the EK certificate and the AK.

use locus_proto::credential::{object_name, seal_nonce, CredentialError, EkPublic};
use locus_proto::evidence::{EkCert, SealedNonce};
use thiserror::Error;

/// Why a bundle's sealed nonce does not show that its AK lives in a certified TPM.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SealError {
    /// Neither a sealed nonce nor a provider AK certificate: the EK certificate proves nothing
    /// about the AK (a software TPM can carry a copied one).
    #[error("no proof that the AK lives in the TPM of the EK certificate: the nonce was not sealed to the EK (credential activation) and there is no provider AK certificate")]
    NoProof,
    /// The sealed nonce names an EK certificate the bundle does not carry.
    #[error("the nonce was sealed to the EK certificate at NV {nv_index:#010x}, which the bundle does not carry")]
    NoSuchEkCert { nv_index: u32 },
    /// The EK certificate the nonce was sealed to does not chain to a configured root.
    #[error("the nonce was sealed to the EK certificate at NV {nv_index:#010x}, which does not chain: {reason}")]
    EkCertUntrusted { nv_index: u32, reason: String },
    /// The EK certificate or the AK cannot be used to recompute the credential.
    #[error("cannot recompute the sealed nonce: {0}")]
    Recompute(CredentialError),
    /// The credential is this nonce's, under this EK, but for another object name: the vTPM
    /// was asked to activate it for another AK than the one that quoted.
    #[error("the sealed nonce was made for another object than the quoting AK (name {ak})")]
    AnotherAk { ak: String },
    /// The credential is not this bundle's nonce sealed to that EK: the bundle's nonce is not
    /// the one the vTPM had to unseal (a wrong secret, or a credential replayed from another
    /// request).
    #[error("the sealed nonce does not carry this bundle's nonce under the EK at NV {nv_index:#010x} (a wrong secret or a credential from another request)")]
    NotThisNonce { nv_index: u32 },
}

/// Checks that `sealed` is `nonce` sealed to the EK certificate it names for the AK
/// `ak_public`. `chains` says whether an EK certificate chains to the policy's roots (the
/// `ek_chain` check's verdict for that certificate).
pub fn check_sealed_nonce(
    sealed: &SealedNonce,
    nonce: &[u8],
    ak_public: &[u8],
    ek_certs: &[EkCert],
    chains: &dyn Fn(&[u8]) -> Result<(), String>,
) -> Result<(), SealError> {
    let cert = ek_certs
        .iter()
        .find(|c| c.nv_index == sealed.ek_nv_index)
        .ok_or(SealError::NoSuchEkCert {
            nv_index: sealed.ek_nv_index,
        })?;
    chains(&cert.der).map_err(|reason| SealError::EkCertUntrusted {
        nv_index: cert.nv_index,
        reason,
    })?;
    let ek = EkPublic::from_certificate_der(&cert.der).map_err(SealError::Recompute)?;
    let name = object_name(ak_public).map_err(SealError::Recompute)?;
    let not_this_nonce = SealError::NotThisNonce {
        nv_index: cert.nv_index,
    };
    let nonce = <&locus_proto::Nonce>::try_from(nonce).map_err(|_| not_this_nonce.clone())?;
    let expected = seal_nonce(&ek, &name, nonce).map_err(SealError::Recompute)?;
    if expected
        == (locus_proto::credential::Credential {
            id_object: sealed.id_object.clone(),
            encrypted_secret: sealed.encrypted_secret.clone(),
        })
    {
        return Ok(());
    }
    // The encrypted seed depends on the nonce and the EK only; the ID object also on the name.
    if expected.encrypted_secret == sealed.encrypted_secret {
        return Err(SealError::AnotherAk {
            ak: hex::encode(&name),
        });
    }
    Err(not_this_nonce)
}
