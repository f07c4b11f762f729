//! The receiving side: validate, NACK what is bad, apply the rest in one transaction
//! together with the sender revision reached.

use std::collections::HashSet;
use std::sync::Arc;

use meridian_model::ResourceKind;
use meridian_proto::kds;
use meridian_store::{Precondition, ResourceKey, Revision, Store, WriteOp};

use crate::convert::{from_proto, key_of, key_to_proto};
use crate::outbound::PAGE;
use crate::{KdsError, Scope, Transform};

/// Applies received [`kds::Changes`] to a store.
pub struct Inbound<S, T> {
    store: Arc<dyn Store>,
    /// Where the last sender revision applied is kept.
    revision_setting: String,
    scope: S,
    transform: T,
    /// Keys received since `snapshot_start`, while a snapshot is in progress.
    snapshot_keys: Option<HashSet<ResourceKey>>,
}

/// What one message did.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// Resources refused, with the reason (the rest applied).
    pub nacks: Vec<kds::Nack>,
    /// Resources written or removed.
    pub written: usize,
    /// Resources removed at the end of a snapshot because it did not contain them.
    pub pruned: usize,
    /// The sender revision now recorded as applied, if the message carried one.
    pub through: Option<Revision>,
}

fn nack(key: kds::ResourceKey, reason: impl Into<String>) -> kds::Nack {
    kds::Nack {
        key: Some(key),
        reason: reason.into(),
    }
}

impl<S: Scope, T: Transform> Inbound<S, T> {
    /// Applies into `store`, recording progress in the setting `revision_setting`.
    pub fn new(
        store: Arc<dyn Store>,
        revision_setting: impl Into<String>,
        scope: S,
        transform: T,
    ) -> Self {
        Inbound {
            store,
            revision_setting: revision_setting.into(),
            scope,
            transform,
            snapshot_keys: None,
        }
    }

    /// The last sender revision applied (0 if none): where the sender resumes.
    pub async fn applied_revision(&self) -> Result<Revision, KdsError> {
        Ok(self
            .store
            .setting(&self.revision_setting)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Applies one message. Bad resources are NACKed and the rest applies; only a
    /// store failure or a protocol violation is an error.
    pub async fn apply(&mut self, changes: &kds::Changes) -> Result<Applied, KdsError> {
        let has_content = !changes.upserts.is_empty() || !changes.removals.is_empty();
        if changes.snapshot_start {
            self.snapshot_keys = Some(HashSet::new());
        } else if self.snapshot_keys.is_none()
            && (changes.snapshot_end || (has_content && changes.through_revision == 0))
        {
            // Outside a snapshot every message with content says how far it brings us.
            return Err(KdsError::Protocol(
                "a snapshot chunk arrived without snapshot_start".to_owned(),
            ));
        }
        let mut applied = Applied::default();
        let mut ops = Vec::with_capacity(changes.upserts.len() + changes.removals.len() + 1);
        for resource in &changes.upserts {
            let local = from_proto(resource).and_then(|received| self.transform.resource(received));
            let new = match local {
                Ok(new) => new,
                Err(reason) => {
                    applied.nacks.push(nack(key_of(resource), reason));
                    continue;
                }
            };
            // Defence in depth: never overwrite a resource owned by someone else.
            if let Some(existing) = self.store.get(&new.key).await?
                && existing.zone != new.zone
            {
                applied.nacks.push(nack(
                    key_of(resource),
                    format!("{} belongs to zone {:?}", new.key, existing.zone),
                ));
                continue;
            }
            if let Some(keys) = &mut self.snapshot_keys {
                keys.insert(new.key.clone());
            }
            ops.push(WriteOp::Put(new, Precondition::Any));
        }
        for removal in &changes.removals {
            let key =
                match crate::convert::key_from_proto(removal).and_then(|k| self.transform.key(k)) {
                    Ok(key) => key,
                    Err(reason) => {
                        applied.nacks.push(nack(removal.clone(), reason));
                        continue;
                    }
                };
            match self.store.get(&key).await? {
                // Removing what is not there is already done.
                None => {}
                Some(existing) if !self.scope.includes(&key, existing.zone.as_deref()) => {
                    applied.nacks.push(nack(
                        removal.clone(),
                        format!("{key} is not the sender's to remove"),
                    ));
                }
                Some(_) => ops.push(WriteOp::Delete(key, Precondition::Any)),
            }
        }
        applied.written = ops.len();
        if changes.snapshot_end {
            let seen = self.snapshot_keys.take().unwrap_or_default();
            let stale = self.stale_resources(&seen).await?;
            applied.pruned = stale.len();
            ops.extend(
                stale
                    .into_iter()
                    .map(|key| WriteOp::Delete(key, Precondition::Any)),
            );
        }
        if changes.through_revision > 0 {
            ops.push(WriteOp::SetSetting {
                key: self.revision_setting.clone(),
                value: changes.through_revision.to_string(),
            });
            applied.through = Some(changes.through_revision);
        }
        // A heartbeat (or a message whose every resource was NACKed without a
        // revision to record) writes nothing: no transaction at all.
        if !ops.is_empty() {
            self.commit(ops, &mut applied).await?;
        }
        Ok(applied)
    }

    /// In-scope local resources a finished snapshot did not contain, owned resources
    /// before their owners so each delete finds its target. Reads only the scope's
    /// kinds, page by page, keeping only the keys to delete.
    async fn stale_resources(
        &self,
        seen: &HashSet<ResourceKey>,
    ) -> Result<Vec<ResourceKey>, KdsError> {
        let mut stale = Vec::new();
        for kind in self.scope.kinds() {
            let mut after: Option<(String, String)> = None;
            loop {
                let cursor = after.as_ref().map(|(m, n)| (m.as_str(), n.as_str()));
                let page = self.store.list_after(kind, cursor, PAGE).await?;
                let full = page.len() >= PAGE;
                after = page
                    .last()
                    .map(|r| (r.key.mesh.clone(), r.key.name.clone()));
                stale.extend(
                    page.into_iter()
                        .filter(|r| {
                            self.scope.includes(&r.key, r.zone.as_deref()) && !seen.contains(&r.key)
                        })
                        .map(|r| r.key),
                );
                if !full {
                    break;
                }
            }
        }
        stale.sort_by_key(|key| matches!(key.kind, ResourceKind::Mesh | ResourceKind::Zone));
        Ok(stale)
    }

    /// Commits the batch atomically. If the store refuses it for a reason tied to one
    /// resource (e.g. a policy whose mesh is missing), applies the writes one by one,
    /// NACKing those the store refuses, so one bad resource never blocks the rest.
    async fn commit(&self, ops: Vec<WriteOp>, applied: &mut Applied) -> Result<(), KdsError> {
        match self.store.apply(ops.clone()).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_retryable() => Err(error.into()),
            Err(error) => {
                tracing::debug!(%error, "batch refused; applying resource by resource");
                for op in ops {
                    let key = match &op {
                        WriteOp::Put(new, _) => Some(new.key.clone()),
                        WriteOp::Delete(key, _) => Some(key.clone()),
                        WriteOp::SetSetting { .. } => None,
                    };
                    match self.store.apply(vec![op]).await {
                        Ok(_) => {}
                        Err(error) if error.is_retryable() => return Err(error.into()),
                        // A cascade may already have removed it.
                        Err(meridian_store::StoreError::NotFound(_)) => {}
                        Err(error) => {
                            applied.written = applied.written.saturating_sub(1);
                            let key = key.map(|k| key_to_proto(&k)).unwrap_or_default();
                            applied.nacks.push(nack(key, error.to_string()));
                        }
                    }
                }
                Ok(())
            }
        }
    }
}
