//! `docker-credential-regauth`: the docker credential helper for
//! registries signed in with `regauth login` (see
//! `regauth::terminal::helper`).

#![forbid(unsafe_code)]

fn main() {
    let action = std::env::args().nth(1);
    std::process::exit(regauth::terminal::helper::run(action.as_deref()));
}
