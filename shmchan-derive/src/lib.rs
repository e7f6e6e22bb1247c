//! `#[derive(ShmSafe)]` for [shmchan](https://docs.rs/shmchan).
//!
//! Use it through `shmchan::ShmSafe`; this crate is an implementation detail.

use proc_macro::TokenStream;

/// Derives `shmchan::ShmSafe`. See the `shmchan` crate documentation.
#[proc_macro_derive(ShmSafe)]
pub fn derive_shm_safe(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    syn::Error::new_spanned(&input.ident, "ShmSafe derive: not implemented yet")
        .into_compile_error()
        .into()
}
