//! `unsafe impl ShmSafe for Tick`.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Gen, layout};

pub fn expand(g: &Gen<'_, '_>) -> TokenStream {
    let p = &g.private;
    let (impl_generics, _, _) = g.input.generics.split_for_impl();
    let self_ty = &g.self_ty;
    let bounded_where = &g.bounded_where;
    let layout = layout::layout_const(g);
    let (view, view_mut) = (&g.view, &g.view_mut);
    let ty_args = view_type_args(g);
    quote! {
        // The checks in this block (repr, no padding, not zero-sized, every field `ShmSafe`)
        // are what makes this impl sound; the views only touch one field's bytes at a time.
        #[automatically_derived]
        #[allow(private_bounds)]
        unsafe impl #impl_generics #p::ShmSafe for #self_ty #bounded_where {
            #layout
            const DESC: #p::TypeDesc = #p::TypeDesc::Struct(&<Self as #p::ShmSafe>::LAYOUT);
            type View<'a> = #view<'a, #ty_args>;
            type ViewMut<'a> = #view_mut<'a, #ty_args>;

            #[inline]
            unsafe fn view<'a>(ptr: *const Self) -> Self::View<'a> {
                // The caller's contract is exactly `from_raw`'s.
                unsafe { #view::from_raw(ptr) }
            }

            #[inline]
            unsafe fn view_shared<'a>(ptr: *const Self) -> Self::View<'a> {
                // The caller's contract is exactly `from_shared`'s.
                unsafe { #view::from_shared(ptr) }
            }

            #[inline]
            unsafe fn view_mut<'a>(ptr: *mut Self) -> Self::ViewMut<'a> {
                unsafe { #view_mut::from_raw(ptr) }
            }
        }
    }
}

/// The struct's generic arguments without angle brackets: `T, N`.
pub fn view_type_args(g: &Gen<'_, '_>) -> TokenStream {
    let args = g.input.generics.params.iter().map(|p| match p {
        syn::GenericParam::Type(t) => {
            let i = &t.ident;
            quote!(#i)
        }
        syn::GenericParam::Const(c) => {
            let i = &c.ident;
            quote!(#i)
        }
        syn::GenericParam::Lifetime(l) => {
            let l = &l.lifetime;
            quote!(#l)
        }
    });
    quote!(#(#args),*)
}
