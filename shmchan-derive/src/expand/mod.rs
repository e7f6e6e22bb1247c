//! Code generation. Everything is emitted inside `const _: () = { ... };` (except the two view
//! types, which users name), marked `#[automatically_derived]`, and refers to the runtime crate by
//! absolute path (`::shmchan::__private::...`, or the `#[shmchan(crate = "...")]` path) so that it
//! compiles under `#![no_implicit_prelude]` and next to user items of any name.

mod layout;
mod trait_impl;
mod view;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{Data, Input};

/// What every generator needs: the input and the paths and generics derived from it.
struct Gen<'i, 'a> {
    input: &'i Input<'a>,
    /// `::shmchan::__private`.
    private: TokenStream,
    /// `Tick<T, N>`.
    self_ty: TokenStream,
    /// The struct's where clause plus `FieldType: ShmSafe` for every field, each bound spanned at
    /// its field's type so that an unimplemented bound points there.
    bounded_where: TokenStream,
    view: syn::Ident,
    view_mut: syn::Ident,
    is_generic: bool,
}

impl<'i, 'a> Gen<'i, 'a> {
    fn new(input: &'i Input<'a>) -> Self {
        let krate = &input.krate;
        let private = quote!(#krate::__private);
        let ident = input.ident;
        let (_, ty_generics, where_clause) = input.generics.split_for_impl();
        let existing = where_clause.map(|w| {
            let p = w.predicates.iter();
            quote!(#(#p,)*)
        });
        let field_bounds = input.fields().iter().map(|f| {
            let ty = f.ty;
            // Every token of the bound carries the field type's span (not just `#ty`), so that
            // rustc reports an unsatisfied bound at the field rather than at the derive.
            let bound = respan(quote!(#private::ShmSafe), ty.span());
            quote_spanned!(ty.span()=> #ty: #bound,)
        });
        Gen {
            input,
            self_ty: quote!(#ident #ty_generics),
            bounded_where: quote!(where #existing #(#field_bounds)*),
            view: format_ident!("{}View", ident),
            view_mut: format_ident!("{}ViewMut", ident),
            is_generic: input
                .generics
                .params
                .iter()
                .any(|p| matches!(p, syn::GenericParam::Type(_) | syn::GenericParam::Const(_))),
            private,
        }
    }
}

/// `tokens` with every span replaced by `span`.
pub(super) fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(g) = &tree {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tree = proc_macro2::TokenTree::Group(group);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// The full expansion for a valid struct: layout checks, `ShmSafe` impl, views.
pub fn derive(input: &Input<'_>) -> TokenStream {
    let g = Gen::new(input);
    let view_types = view::types(&g);
    let checks = layout::checks(&g);
    let trait_impl = trait_impl::expand(&g);
    let view_impls = view::impls(&g);
    quote! {
        #view_types
        const _: () = {
            #checks
            #trait_impl
            #view_impls
        };
    }
}

/// The checks that still make sense after `validate` refused the input, so that one compilation
/// reports padding and non-`ShmSafe` field types alongside the syntactic errors. Only for
/// non-generic `repr(C)`/`repr(transparent)` structs with fields (the layout of anything else is
/// unknown or meaningless); `flagged[i]` marks fields whose type was already refused by name.
pub fn checks_only(input: &Input<'_>, flagged: &[bool]) -> TokenStream {
    let fixed = input.repr.is_fixed() && input.repr.packed.is_none();
    let has_fields = matches!(&input.data, Data::Struct { fields, .. } if !fields.is_empty());
    if !fixed || !has_fields || !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let g = Gen::new(input);
    let private = &g.private;
    let checks = layout::checks(&g);
    let bounds = input
        .fields()
        .iter()
        .zip(flagged)
        .filter(|(_, flagged)| !**flagged)
        .map(|(f, _)| {
            let ty = f.ty;
            let private = respan(private.clone(), ty.span());
            quote_spanned! {ty.span()=>
                {
                    fn assert_shm_safe<T: #private::ShmSafe>() {}
                    assert_shm_safe::<#ty>();
                }
            }
        });
    quote! {
        const _: () = {
            #checks
            const _: fn() = || { #(#bounds)* };
        };
    }
}
