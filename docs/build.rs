//! Copies every chapter (`*.md` beside this file) into `OUT_DIR` with its images inlined as
//! `data:` URIs, for `src/lib.rs` to include. Rustdoc copies no images into `target/doc`, and a
//! relative path from a module's page would have to know where the target directory is; a
//! `data:` URI shows the same picture wherever the book is opened. The Markdown files keep
//! their relative paths, so they still read on their own.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let docs = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut chapters = Vec::new();
    markdown_files(&docs, &mut chapters)?;
    for chapter in chapters {
        println!("cargo:rerun-if-changed={}", chapter.display());
        let text = fs::read_to_string(&chapter)?;
        let folder = chapter.parent().unwrap_or(&docs);
        let inlined = inline_images(&text, folder)
            .map_err(|error| format!("{}: {error}", chapter.display()))?;
        let target = out.join(chapter.strip_prefix(&docs)?);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(target, inlined)?;
    }
    Ok(())
}

/// Every `*.md` under `folder`, outside `src` and `target`. Each folder is watched too, so a
/// chapter added later is copied before `src/lib.rs` includes it.
fn markdown_files(folder: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    println!("cargo:rerun-if-changed={}", folder.display());
    for entry in fs::read_dir(folder)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if path.is_dir() && name != "src" && name != "target" {
            markdown_files(&path, found)?;
        } else if path.extension().is_some_and(|extension| extension == "md") {
            found.push(path);
        }
    }
    Ok(())
}

/// `text` with each image `![alt](relative/path)` pointing at a `data:` URI of that file.
fn inline_images(text: &str, folder: &Path) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("![") {
        let Some((destination, after)) = image_destination(&rest[start..]) else {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        };
        let prefix_len = rest.len() - after.len() - destination.len() - 1;
        out.push_str(&rest[..prefix_len]);
        out.push_str(&data_uri(destination, folder)?);
        out.push(')');
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// For `![alt](destination)…`, the destination and what follows its `)`; `None` when it is
/// no image link, or not a relative path to a file.
fn image_destination(text: &str) -> Option<(&str, &str)> {
    let open = text.find("](")?;
    // The alt text stays on one line; past it, this was no image.
    if text[..open].contains('\n') {
        return None;
    }
    let destination_and_rest = &text[open + 2..];
    let close = destination_and_rest.find(')')?;
    let destination = &destination_and_rest[..close];
    let external = destination.contains(':') || destination.starts_with('/');
    if external || destination.contains(char::is_whitespace) {
        return None;
    }
    Some((destination, &destination_and_rest[close + 1..]))
}

fn data_uri(path: &str, folder: &Path) -> Result<String, String> {
    let media_type = match Path::new(path).extension().and_then(|e| e.to_str()) {
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => return Err(format!("{path} is no SVG, PNG or JPEG image")),
    };
    let file = folder.join(path);
    println!("cargo:rerun-if-changed={}", file.display());
    let bytes = fs::read(&file).map_err(|error| format!("{path} could not be read: {error}"))?;
    Ok(format!("data:{media_type};base64,{}", base64(&bytes)))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0_u32, |group, (index, &byte)| {
                group | u32::from(byte) << (16 - 8 * index)
            });
        for index in 0..4 {
            if index <= chunk.len() {
                let sextet = (group >> (18 - 6 * index)) & 0x3f;
                out.push(char::from(ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
