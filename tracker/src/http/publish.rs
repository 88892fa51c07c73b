//! The publish API: `POST /api/v1/releases` registers a release, `DELETE
//! /api/v1/releases/{name}/{version}` withdraws one.
//!
//! A release is accepted only when everything that binds it to its publisher checks out, in
//! this order (each failure has its own status and machine name, so a publisher's tooling can
//! tell what to fix):
//!
//! | check | refusal |
//! |---|---|
//! | bearer token belongs to a publisher | 401 `unauthorized` |
//! | body within `limits.max_publish_body_bytes` | 413 `body_too_large` |
//! | body is `{"metainfo": <base64>, "manifest": <signed manifest>}` | 400 `bad_json`, `bad_base64` |
//! | metainfo is a valid torrent | 400 `bad_metainfo` |
//! | manifest is well formed | 400 `bad_manifest` |
//! | manifest signed by the publisher's registered key | 422 `bad_signature` |
//! | manifest names the metainfo's info-hash | 422 `info_hash_mismatch` |
//! | version without build metadata | 422 `bad_version` |
//! | name not owned by another publisher | 403 `name_taken` |
//! | name and version, and the torrent, not registered yet | 409 `duplicate_release`, `duplicate_torrent` |
//!
//! The signature is checked against the key the operator registered for the publisher, not
//! the key embedded in the manifest: the embedded key only says who claims to have signed.
//! The manifest is stored in its compact JSON form (the one `GET /api/v1/assets/...`
//! serves) and the metainfo exactly as sent, so `GET /api/v1/torrents/...` returns the bytes
//! whose info-hash was checked. The info-hash joins the in-memory registered set only after
//! the registry committed, and leaves it as soon as the registry deleted it.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use swarmcdn_proto::InfoHash;
use swarmcdn_proto::manifest::{ManifestError, SignedManifest, VerifyingKey};
use swarmcdn_proto::metainfo::Metainfo;

use super::auth::authenticate;
use super::{AppState, Error};

/// The body of `POST /api/v1/releases`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    /// The `.torrent` file, standard base64.
    metainfo: String,
    /// The signed manifest, in its JSON form.
    manifest: serde_json::Value,
}

/// The answer to a successful publish (201).
#[derive(Debug, Serialize)]
struct Published {
    name: String,
    version: String,
    info_hash: InfoHash,
    /// Where the signed manifest is served (a path on this tracker).
    manifest_url: String,
    /// Where the metainfo is served (a path on this tracker).
    torrent_url: String,
}

/// `POST /api/v1/releases`.
pub(crate) async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let publisher = authenticate(&state, &headers).await?;
    let limit = state.config().limits.max_publish_body_bytes;
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        Error::api(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    })?;
    let request: PublishRequest = serde_json::from_slice(&body).map_err(|e| {
        Error::api(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!(
                "the body must be {{\"metainfo\": <base64 of the .torrent>, \"manifest\": \
                 <signed manifest>}}: {e}"
            ),
        )
    })?;
    let metainfo_bytes = data_encoding::BASE64
        .decode(request.metainfo.as_bytes())
        .map_err(|e| {
            Error::api(
                StatusCode::BAD_REQUEST,
                "bad_base64",
                format!("`metainfo` is not standard base64: {e}"),
            )
        })?;
    let metainfo = Metainfo::from_bytes(&metainfo_bytes).map_err(|e| {
        Error::api(
            StatusCode::BAD_REQUEST,
            "bad_metainfo",
            format!("`metainfo` is not a valid torrent: {e}"),
        )
    })?;
    // Re-encoding a parsed JSON value cannot fail; the manifest parser then checks it all.
    let manifest_json = serde_json::to_vec(&request.manifest).map_err(Error::internal)?;
    let signed = SignedManifest::from_json(&manifest_json).map_err(|e| {
        Error::api(
            StatusCode::BAD_REQUEST,
            "bad_manifest",
            format!("`manifest` is not a valid signed manifest: {e}"),
        )
    })?;
    let key = VerifyingKey::from_bytes(&publisher.public_key).map_err(|_| {
        Error::internal(format!(
            "publisher {:?} has an unusable public key",
            publisher.name
        ))
    })?;
    let manifest = signed.verify_with(&key).map_err(|e| {
        let message = match e {
            ManifestError::UntrustedKey { key } => format!(
                "the manifest is signed by key {key}, not by the key registered for publisher \
                 {:?}",
                publisher.name
            ),
            other => format!("the manifest's signature is not valid: {other}"),
        };
        Error::api(StatusCode::UNPROCESSABLE_ENTITY, "bad_signature", message)
    })?;
    let info_hash = metainfo.info_hash();
    if manifest.info_hash() != info_hash {
        return Err(Error::api(
            StatusCode::UNPROCESSABLE_ENTITY,
            "info_hash_mismatch",
            format!(
                "the manifest names torrent {}, but the metainfo's info-hash is {info_hash}",
                manifest.info_hash()
            ),
        ));
    }

    let name = manifest.name().clone();
    let version = manifest.version().to_string();
    let stored_manifest = signed.to_json().into_bytes();
    let registry = state.registry().clone();
    let release = {
        let (name, version) = (name.clone(), version.clone());
        tokio::task::spawn_blocking(move || {
            registry.insert_release(
                &publisher,
                &name,
                &version,
                &info_hash,
                &stored_manifest,
                &metainfo_bytes,
            )
        })
        .await??
    };
    state.register(info_hash);
    state.metrics().published();
    tracing::info!(
        publisher = %release.publisher,
        name = %name,
        version = %version,
        %info_hash,
        "release published"
    );
    let manifest_url = format!("/api/v1/assets/{name}/{version}");
    let published = Published {
        name: name.into_string(),
        version,
        info_hash,
        torrent_url: format!("/api/v1/torrents/{info_hash}"),
        manifest_url: manifest_url.clone(),
    };
    let mut response = (StatusCode::CREATED, Json(published)).into_response();
    if let Ok(location) = HeaderValue::from_str(&manifest_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `DELETE /api/v1/releases/{name}/{version}`: the owner withdraws a release. Its torrent
/// stops being tracked at once (announces get "unregistered torrent") and its swarm state is
/// dropped.
pub(crate) async fn unpublish(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let publisher = authenticate(&state, &headers).await?;
    let registry = state.registry().clone();
    let info_hash = tokio::task::spawn_blocking(move || {
        let Some(release) = registry.release(&name, &version)? else {
            return Ok(Err(Error::api(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no release {name} {version}"),
            )));
        };
        if release.publisher != publisher.name {
            return Ok(Err(Error::api(
                StatusCode::FORBIDDEN,
                "not_owner",
                format!("release {name} {version} belongs to another publisher"),
            )));
        }
        registry.remove_release(&name, &version).map(Ok)
    })
    .await???;
    state.unregister(&info_hash);
    state.store().remove_torrent(&info_hash)?;
    tracing::info!(%info_hash, "release withdrawn");
    Ok(StatusCode::NO_CONTENT.into_response())
}
