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

#[cfg(test)]
mod tests {
    /// Runs the derive on `src` and checks that it returned (never panicked) tokens that parse as
    /// Rust items, and whether they contain a `compile_error!`.
    fn expand(src: &str) -> (bool, String) {
        let input: syn::DeriveInput = syn::parse_str(src).expect("test input parses");
        let tokens = super::derive(&input).unwrap_or_else(syn::Error::into_compile_error);
        let text = tokens.to_string();
        if let Err(e) = syn::parse2::<syn::File>(tokens) {
            panic!("expansion of {src} is not valid Rust: {e}\n{text}");
        }
        (text.contains("compile_error"), text)
    }

    #[test]
    fn accepted_shapes_expand_without_errors() {
        for src in [
            "#[repr(C)] struct A { x: u64 }",
            "#[repr(C)] pub struct A(pub u32, f32);",
            "#[repr(transparent)] struct A(u64);",
            "#[repr(C, align(64))] struct A { x: [u8; 64] }",
            "#[repr(C)] #[repr(align(8))] struct A { x: u64 }",
            "#[repr(C)] struct A<T: ShmSafe, const N: usize> { x: [T; N] }",
            "#[repr(C)] struct A<T> where T: ::shmchan::ShmSafe { x: T }",
            "#[repr(C)] struct A { r#type: u32, größe: u32, _pad: [u8; 8] }",
            "#[repr(C)] #[shmchan(crate = \"::other\")] struct A { x: u8 }",
        ] {
            let (has_error, text) = expand(src);
            assert!(!has_error, "{src} was refused: {text}");
        }
    }

    /// (A malformed `repr` that only rustc can judge, such as `align` without a value, is left to
    /// rustc's own error.)
    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for src in [
            "enum A { X, Y }",
            "union A { x: u32, y: f32 }",
            "struct A;",
            "#[repr(C)] struct A {}",
            "#[repr(C)] struct A();",
            "struct A { x: u8 }",
            "#[repr] struct A { x: u8 }",
            "#[repr = \"C\"] struct A { x: u8 }",
            "#[repr(C, packed(2))] struct A { x: u8 }",
            "#[repr(u8, simd, Rust)] struct A { x: u8 }",
            "#[repr(C)] #[shmchan] struct A { x: u8 }",
            "#[repr(C)] #[shmchan(crate = 5)] struct A { x: u8 }",
            "#[repr(C)] #[shmchan(crate = \"not a path!\")] struct A { x: u8 }",
            "#[repr(C)] #[shmchan(crate = \"x\", crate)] struct A { x: u8 }",
            "#[repr(C)] struct A<'a, T, U: Copy> { x: &'a T, y: U }",
            "#[repr(C)] struct A { x: (), y: !, z: [bool; 2], w: fn(), v: dyn Send, u: [u8] }",
            "#[repr(C)] struct A { new: u8, get: u8, x: u8, set_x: u8 }",
            "#[repr(C)] struct A { x: Option<Box<Vec<String>>>, y: core::cell::Cell<u8> }",
        ] {
            let (has_error, text) = expand(src);
            assert!(has_error, "{src} was accepted: {text}");
        }
    }

    #[test]
    fn a_struct_with_many_fields_expands() {
        let fields: Vec<String> = (0..300).map(|i| format!("f{i}: u64")).collect();
        let (has_error, _) = expand(&format!("#[repr(C)] struct A {{ {} }}", fields.join(", ")));
        assert!(!has_error);
    }
}
