//! Parses a Dockerfile as BuildKit does and lists its instructions, with
//! the line each starts on; a syntax error names the file and line.
//!
//! ```sh
//! cargo run -p cargohold-builder --example parse_dockerfile -- Dockerfile
//! ```

#![allow(clippy::print_stdout, reason = "an example program prints its results")]

use cargohold_builder::dockerfile::parse;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = std::env::args().nth(1) else {
        return Err("usage: parse_dockerfile DOCKERFILE".into());
    };
    let text = std::fs::read_to_string(&path)?;
    let d = parse(&text, &path)?;
    for i in &d.instructions {
        println!("{:>4}  {:?} {}", i.line, i.keyword, i.args);
    }
    Ok(())
}
