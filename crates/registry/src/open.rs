//! Opening any image location, registries and Docker engines included.

use cargohold_image_core::{
    AsyncImageDest, AsyncImageSource, Blocking, ImageDest, ImageLocation, ImageSource, Reference, Store,
};

use crate::adapter::Registry;
use crate::daemon::DockerHost;

/// The engine `host` names (`DOCKER_HOST` syntax).
fn docker_host(host: &str) -> cargohold_image_core::Result<DockerHost> {
    DockerHost::parse(host)
        .map_err(|reason| cargohold_image_core::Error::BadOption { option: "the Docker host".into(), reason })
}

impl Registry {
    async fn daemon_source_of(&self, r: &str) -> cargohold_image_core::Result<crate::DaemonSource> {
        let opts = self.client().options();
        self.daemon_source(r, &docker_host(&opts.daemon_host)?, &opts.tmpdir).await
    }

    fn daemon_dest_of(
        &self,
        r: &str,
        additional_tags: &[Reference],
    ) -> cargohold_image_core::Result<crate::DaemonDest> {
        let opts = self.client().options();
        let host = docker_host(opts.dest_daemon_host.as_deref().unwrap_or(&opts.daemon_host))?;
        self.daemon_dest(r, &host, &opts.tmpdir, additional_tags)
    }
}

/// Like `cargohold_image_core::open_source`, plus `docker://REF` and
/// `docker-daemon:REF`.
pub fn open_source(
    loc: &ImageLocation,
    store: &Store,
    reg: &Registry,
) -> cargohold_image_core::Result<Box<dyn ImageSource + Send>> {
    match loc {
        ImageLocation::Docker(r) => Ok(Box::new(reg.source(&Reference::parse(r)?))),
        ImageLocation::DockerDaemon(r) => Ok(Box::new(reg.block_on(reg.daemon_source_of(r))?)),
        other => cargohold_image_core::open_source(other, store),
    }
}

/// Like `cargohold_image_core::open_dest`, plus `docker://REF` and
/// `docker-daemon:NAME:TAG`.
pub fn open_dest(
    loc: &ImageLocation,
    store: &Store,
    reg: &Registry,
    name_hint: Option<&Reference>,
) -> cargohold_image_core::Result<Box<dyn ImageDest>> {
    open_dest_tagged(loc, store, reg, name_hint, &[])
}

/// [`open_dest`], the image also named `additional_tags` (skopeo's
/// `--additional-tag`): recorded by a `docker-archive:` and loaded so into
/// a `docker-daemon:`; any other location is refused before it is opened.
pub fn open_dest_tagged(
    loc: &ImageLocation,
    store: &Store,
    reg: &Registry,
    name_hint: Option<&Reference>,
    additional_tags: &[Reference],
) -> cargohold_image_core::Result<Box<dyn ImageDest>> {
    match loc {
        ImageLocation::Docker(r) => {
            cargohold_image_core::check_additional_tags(loc, additional_tags)?;
            Ok(Box::new(reg.dest(&Reference::parse(r)?)))
        }
        ImageLocation::DockerDaemon(r) => Ok(Box::new(reg.daemon_dest_of(r, additional_tags)?)),
        other => cargohold_image_core::open_dest_tagged(other, store, name_hint, additional_tags),
    }
}

/// Like `cargohold_image_core::open_source_async`, plus `docker://REF` and
/// `docker-daemon:REF`.
pub async fn open_source_async(
    loc: &ImageLocation,
    store: &Store,
    reg: &Registry,
) -> cargohold_image_core::Result<Box<dyn AsyncImageSource>> {
    match loc {
        ImageLocation::Docker(r) => Ok(Box::new(reg.source(&Reference::parse(r)?))),
        ImageLocation::DockerDaemon(r) => Ok(Box::new(Blocking::source(reg.daemon_source_of(r).await?))),
        other => cargohold_image_core::open_source_async(other, store).await,
    }
}

/// Like `cargohold_image_core::open_dest_async`, plus `docker://REF` and
/// `docker-daemon:NAME:TAG`.
pub async fn open_dest_async(
    loc: &ImageLocation,
    store: &Store,
    reg: &Registry,
    name_hint: Option<&Reference>,
) -> cargohold_image_core::Result<Box<dyn AsyncImageDest>> {
    open_dest_async_tagged(loc, store, reg, name_hint, &[]).await
}

/// [`open_dest_tagged`] for async code.
pub async fn open_dest_async_tagged(
    loc: &ImageLocation,
    store: &Store,
    reg: &Registry,
    name_hint: Option<&Reference>,
    additional_tags: &[Reference],
) -> cargohold_image_core::Result<Box<dyn AsyncImageDest>> {
    match loc {
        ImageLocation::Docker(r) => {
            cargohold_image_core::check_additional_tags(loc, additional_tags)?;
            Ok(Box::new(reg.dest(&Reference::parse(r)?)))
        }
        ImageLocation::DockerDaemon(r) => {
            let (reg, r, tags) = (reg.clone(), r.clone(), additional_tags.to_vec());
            let dest = tokio::task::spawn_blocking(move || reg.daemon_dest_of(&r, &tags))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
            Ok(Box::new(Blocking::dest(dest)))
        }
        other => cargohold_image_core::open_dest_async_tagged(other, store, name_hint, additional_tags).await,
    }
}
