//! Resolving a source to one platform's manifest and config.

use std::io::Read;

use crate::digest::VerifyingReader;
use crate::error::{Error, Result, blob_err};
use crate::manifest::{
    Descriptor, ImageConfig, ImageIndex, ImageManifest, MAX_CONFIG_SIZE, Manifest, Platform, RawManifest,
};
use crate::store::platforms_of;
use crate::transport::{AsyncImageSource, ImageSource};

/// One image, resolved: the top manifest, and for the chosen platform its
/// manifest and config (raw and parsed).
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// What the source designates (may be an index).
    pub top: RawManifest,
    /// The platform's manifest (equal to `top` for single-platform images).
    pub manifest: RawManifest,
    /// The parsed manifest.
    pub image: ImageManifest,
    /// Config bytes, exactly as stored.
    pub config_bytes: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfig,
}

impl ResolvedImage {
    /// Config plus layer bytes (compressed size, as `docker images` shows).
    pub fn size(&self) -> u64 {
        self.image.config.size + self.image.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// The entry of `idx` for `platform` (default: the host's).
pub(crate) fn platform_entry(idx: &ImageIndex, platform: Option<&Platform>, location: &str) -> Result<Descriptor> {
    let want = platform.cloned().unwrap_or_else(Platform::host);
    idx.select_platform(&want).cloned().ok_or_else(|| Error::NoMatchingPlatform {
        wanted: want.to_string(),
        location: location.to_owned(),
        available: platforms_of(&idx.manifests),
    })
}

/// The manifest of one platform's image that `src` designates: the top
/// manifest itself, or the entry of its index for `platform` (default: the
/// host's). What a copy of one platform stores at the destination.
pub async fn platform_manifest(src: &dyn AsyncImageSource, platform: Option<&Platform>) -> Result<RawManifest> {
    let top = src.top_manifest().await?;
    match top.parse()? {
        Manifest::Image(_) => Ok(top),
        Manifest::Index(idx) => src.manifest(&platform_entry(&idx, platform, &src.location())?).await,
    }
}

/// Reads the manifest `src` designates, picks `platform` (default: the host's)
/// from an index, and reads the config, verifying everything.
pub fn resolve_image(src: &mut dyn ImageSource, platform: Option<&Platform>) -> Result<ResolvedImage> {
    let top = src.top_manifest()?;
    let manifest = match top.parse()? {
        Manifest::Image(_) => top.clone(),
        Manifest::Index(idx) => src.manifest(&platform_entry(&idx, platform, &src.location())?)?,
    };
    let Manifest::Image(image) = manifest.parse()? else {
        return Err(Error::Unsupported { location: src.location(), what: "nested indexes".into() });
    };
    if image.config.size > MAX_CONFIG_SIZE {
        return Err(Error::TooLarge {
            what: format!("config {}", image.config.digest),
            size: image.config.size,
            limit: MAX_CONFIG_SIZE,
        });
    }
    let location = src.blob_location(&image.config);
    let mut config_bytes = Vec::with_capacity(image.config.size as usize);
    {
        let r = src.blob(&image.config)?;
        VerifyingReader::new(r, image.config.digest.clone(), Some(image.config.size))
            .read_to_end(&mut config_bytes)
            .map_err(|e| blob_err(&image.config.digest, &location, e))?;
    }
    let config = ImageConfig::from_slice(&config_bytes, &format!("config {} from {location}", image.config.digest))?;
    Ok(ResolvedImage { top, manifest, image, config_bytes, config })
}
