//! `regauth-kubelet-credential-provider`: the kubelet's image credential
//! provider plugin, passing a pod's service-account token to regauth (see
//! `regauth::terminal::kubelet`).

#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    std::process::exit(regauth::terminal::kubelet::main(&args));
}
