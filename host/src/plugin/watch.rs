//! Hot-swap from a watched directory: `<slot>.wasm` dropped into the plugins directory
//! replaces the plugin of the slot with that name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::PluginSlot;

/// Watches a plugins directory and swaps slots when their file changes. Stops when dropped.
pub struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PluginWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginWatcher").finish_non_exhaustive()
    }
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PluginWatcher {
    /// Watch `dir`; a created or modified `<slot name>.wasm` is swapped into that slot once
    /// writes have been quiet for `debounce`. Must be called inside a tokio runtime.
    ///
    /// A file that fails to load or self-test is logged and left alone; the slot keeps its
    /// current plugin, and the next write to the file is tried again.
    pub fn start(
        dir: &Path,
        slots: Vec<Arc<PluginSlot>>,
        debounce: Duration,
    ) -> notify::Result<Self> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && (event.kind.is_create() || event.kind.is_modify())
                {
                    for path in event.paths {
                        let _ = tx.send(path);
                    }
                }
            })?;
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        let by_file: HashMap<String, Arc<PluginSlot>> = slots
            .into_iter()
            .map(|s| (format!("{}.wasm", s.name().replace('/', "--")), s))
            .collect();
        let task = tokio::spawn(async move {
            let mut pending: HashMap<PathBuf, ()> = HashMap::new();
            loop {
                let next = if pending.is_empty() {
                    rx.recv().await
                } else {
                    match tokio::time::timeout(debounce, rx.recv()).await {
                        Ok(next) => next,
                        Err(_) => {
                            for (path, ()) in pending.drain() {
                                let name =
                                    path.file_name().map(|n| n.to_string_lossy().into_owned());
                                if let Some(slot) = name.and_then(|n| by_file.get(&n)) {
                                    match slot.swap_file(&path, None).await {
                                        Ok(o) => {
                                            tracing::info!(slot = %o.slot, sha = %o.sha256, "watched file swapped in")
                                        }
                                        Err(e) => {
                                            tracing::warn!(path = %path.display(), error = %e, "watched file rejected")
                                        }
                                    }
                                }
                            }
                            continue;
                        }
                    }
                };
                match next {
                    Some(path) => {
                        pending.insert(path, ());
                    }
                    None => break,
                }
            }
        });
        Ok(Self {
            _watcher: watcher,
            task,
        })
    }
}
