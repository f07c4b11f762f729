//! The receiving side: validate, NACK what is bad, apply the rest in one transaction
//! together with the sender revision reached (one transaction for every delta that
//! arrived together, see [`Inbound::apply_batch`]).

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
        let mut applied = self.apply_batch(std::slice::from_ref(changes)).await?;
        Ok(applied.pop().unwrap_or_default())
    }

    /// Applies consecutive messages, returning what each did (in order). Plain
    /// deltas go in one store transaction, so a receiver that fell behind catches
    /// up with one commit for everything that arrived meanwhile; snapshot chunks
    /// are applied one by one. The result is the same as applying each in turn.
    pub async fn apply_batch(
        &mut self,
        messages: &[kds::Changes],
    ) -> Result<Vec<Applied>, KdsError> {
        let snapshot = |c: &kds::Changes| c.snapshot_start || c.snapshot_end;
        if messages.len() > 1 && (self.snapshot_keys.is_some() || messages.iter().any(snapshot)) {
            let mut applied = Vec::with_capacity(messages.len());
            for message in messages {
                applied.extend(self.apply_together(std::slice::from_ref(message)).await?);
            }
            return Ok(applied);
        }
        self.apply_together(messages).await
    }

    /// Applies `messages` in one transaction (several only outside snapshots).
    async fn apply_together(
        &mut self,
        messages: &[kds::Changes],
    ) -> Result<Vec<Applied>, KdsError> {
        let mut applied: Vec<Applied> = messages.iter().map(|_| Applied::default()).collect();
        // Each op with the message it came from, for NACKs.
        let mut ops: Vec<(usize, WriteOp)> = Vec::new();
        // Keys an earlier message of the batch put: the store does not have them yet.
        let mut put_here: HashSet<ResourceKey> = HashSet::new();
        let mut through = None;
        for (i, changes) in messages.iter().enumerate() {
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
            let before = ops.len();
            for resource in &changes.upserts {
                let local =
                    from_proto(resource).and_then(|received| self.transform.resource(received));
                let new = match local {
                    Ok(new) => new,
                    Err(reason) => {
                        applied[i].nacks.push(nack(key_of(resource), reason));
                        continue;
                    }
                };
                // Defence in depth: never overwrite a resource owned by someone else.
                if let Some(existing) = self.store.get(&new.key).await?
                    && existing.zone != new.zone
                {
                    applied[i].nacks.push(nack(
                        key_of(resource),
                        format!("{} belongs to zone {:?}", new.key, existing.zone),
                    ));
                    continue;
                }
                if let Some(keys) = &mut self.snapshot_keys {
                    keys.insert(new.key.clone());
                }
                put_here.insert(new.key.clone());
                ops.push((i, WriteOp::Put(new, Precondition::Any)));
            }
            for removal in &changes.removals {
                let key = match crate::convert::key_from_proto(removal)
                    .and_then(|k| self.transform.key(k))
                {
                    Ok(key) => key,
                    Err(reason) => {
                        applied[i].nacks.push(nack(removal.clone(), reason));
                        continue;
                    }
                };
                if put_here.remove(&key) {
                    // The sender put it earlier in this batch: its own to remove.
                    ops.push((i, WriteOp::Delete(key, Precondition::Any)));
                    continue;
                }
                match self.store.get(&key).await? {
                    // Removing what is not there is already done.
                    None => {}
                    Some(existing) if !self.scope.includes(&key, existing.zone.as_deref()) => {
                        applied[i].nacks.push(nack(
                            removal.clone(),
                            format!("{key} is not the sender's to remove"),
                        ));
                    }
                    Some(_) => ops.push((i, WriteOp::Delete(key, Precondition::Any))),
                }
            }
            applied[i].written = ops.len() - before;
            if changes.snapshot_end {
                let seen = self.snapshot_keys.take().unwrap_or_default();
                let stale = self.stale_resources(&seen).await?;
                applied[i].pruned = stale.len();
                ops.extend(
                    stale
                        .into_iter()
                        .map(|key| (i, WriteOp::Delete(key, Precondition::Any))),
                );
            }
            if changes.through_revision > 0 {
                through = Some((i, changes.through_revision));
                applied[i].through = Some(changes.through_revision);
            }
        }
        // Only the last revision reached needs recording.
        if let Some((i, revision)) = through {
            ops.push((
                i,
                WriteOp::SetSetting {
                    key: self.revision_setting.clone(),
                    value: revision.to_string(),
                },
            ));
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
    /// NACKing those the store refuses (in the ACK of the message that carried
    /// them), so one bad resource never blocks the rest.
    async fn commit(
        &self,
        ops: Vec<(usize, WriteOp)>,
        applied: &mut [Applied],
    ) -> Result<(), KdsError> {
        let batch: Vec<WriteOp> = ops.iter().map(|(_, op)| op.clone()).collect();
        match self.store.apply(batch).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_retryable() => Err(error.into()),
            Err(error) => {
                tracing::debug!(%error, "batch refused; applying resource by resource");
                for (i, op) in ops {
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
                            applied[i].written = applied[i].written.saturating_sub(1);
                            let key = key.map(|k| key_to_proto(&k)).unwrap_or_default();
                            applied[i].nacks.push(nack(key, error.to_string()));
                        }
                    }
                }
                Ok(())
            }
        }
    }
}
