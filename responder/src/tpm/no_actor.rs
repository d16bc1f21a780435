//! Built without the `vtpm` feature: no TPM software stack (libtss2) is linked, so every vTPM
//! operation fails with [`VtpmError::Unsupported`]. Prober, monitor and verifier hosts need
//! no TPM; a responder that should quote with one is built with the default features.

use std::sync::mpsc::SyncSender;

use super::ops::{Op, Reply};
use super::{VtpmConfig, VtpmError};

pub(super) struct Actor;

impl Actor {
    pub(super) fn spawn(_config: &VtpmConfig) -> Result<Actor, VtpmError> {
        Err(VtpmError::Unsupported)
    }

    pub(super) fn send(
        &self,
        _op: Op,
        _reply: SyncSender<Result<Reply, VtpmError>>,
    ) -> Result<(), ()> {
        Err(())
    }
}
