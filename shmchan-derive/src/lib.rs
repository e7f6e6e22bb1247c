//! `#[derive(ShmSafe)]` for [shmchan](https://docs.rs/shmchan).
//!
//! Use it through `shmchan::ShmSafe`; this crate is an implementation detail. The pipeline is
//! `ast` (our own small model of the input) → `validate` (every error, accumulated) → `expand`
//! (code generation only). The macro never panics: every problem becomes a spanned
//! `compile_error!`.

use proc_macro::TokenStream;

mod ast;
mod expand;
mod validate;

/// Derives `shmchan::ShmSafe`, checks the struct's layout at compile time and generates its
/// typed views. See the `shmchan` crate documentation and `docs/derive.md`.
#[proc_macro_derive(ShmSafe, attributes(shmchan))]
pub fn derive_shm_safe(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// `parse → validate → expand`. On rejection, every error is returned together with the layout
/// checks that still make sense (padding, per-field `ShmSafe` bounds), so that one compilation
/// reports every problem of the struct.
fn derive(input: &syn::DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let mut cx = validate::Ctxt::new();
    let ast = ast::Input::from_syn(input, &mut cx);
    validate::check(&ast, &mut cx);
    match cx.finish() {
        Ok(()) => Ok(expand::derive(&ast)),
        Err(errors) => {
            let mut tokens = errors.into_compile_error();
            tokens.extend(expand::checks_only(&ast, &cx_flagged(&ast)));
            Ok(tokens)
        }
    }
}

/// The fields whose type `validate` already refused by name, so the checks-only expansion does
/// not report them a second time through the trait bound.
fn cx_flagged(ast: &ast::Input<'_>) -> Vec<bool> {
    ast.fields()
        .iter()
        .map(|f| validate::refused_type(f.ty).is_some())
        .collect()
}
