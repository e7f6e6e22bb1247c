//! `ShmSafe::LAYOUT` and the compile-time layout checks (padding, zero size).
//!
//! Each check is its own constant, spanned at the field it is about, so that every padding hole is
//! reported (not just the first) and the error points at the field. For a non-generic struct they
//! are free `const _` items, evaluated when the crate compiles. For a generic struct the layout is
//! known only per instantiation: the checks are associated constants of a local trait, and
//! `LAYOUT` and the view constructors force them.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::Gen;

/// The local trait holding the checks.
const CHECKS_TRAIT: &str = "__ShmchanLayoutChecks";

/// The checks trait, its impl for the struct, and (non-generic) the `const _` forcing them.
pub fn checks(g: &Gen<'_, '_>) -> TokenStream {
    let p = &g.private;
    let trait_name = format_ident!("{}", CHECKS_TRAIT);
    let type_name = g.input.ident.to_string();
    let fields = g.input.fields();
    // What the checks measure: `Self` inside the generic trait impl, the type itself in free
    // constants.
    let subject = if g.is_generic {
        quote!(Self)
    } else {
        g.self_ty.clone()
    };
    let mut names = Vec::new();
    let mut bodies = Vec::new();

    if let Some(first) = fields.first() {
        let member = &first.member;
        let field_name = &first.name;
        let panic = panic_path(p, first.span);
        names.push(format_ident!("PADDING_BEFORE_FIRST"));
        bodies.push(quote_spanned! {first.span=>
            {
                let offset = #p::offset_of!(#subject, #member);
                if offset != 0 {
                    #panic!("{}", #p::padding_before(#field_name, offset).as_str());
                }
            }
        });
    }
    for (i, field) in fields.iter().enumerate() {
        let member = &field.member;
        let ty = field.ty;
        let field_name = &field.name;
        let (next, trailing) = match fields.get(i + 1) {
            Some(next) => {
                let next_member = &next.member;
                (quote!(#p::offset_of!(#subject, #next_member)), false)
            }
            None => (quote!(#p::size_of::<#subject>()), true),
        };
        let panic = panic_path(p, field.span);
        names.push(format_ident!("PADDING_AFTER_{}", i));
        bodies.push(quote_spanned! {field.span=>
            {
                let end = #p::offset_of!(#subject, #member) + #p::size_of::<#ty>();
                let next = #next;
                // `>`: in `repr(transparent)` zero-sized fields may sit at offset 0, before `end`.
                if next > end {
                    #panic!(
                        "{}",
                        #p::padding_after(#type_name, #field_name, next - end, #trailing).as_str()
                    );
                }
            }
        });
    }
    let ident = g.input.ident;
    names.push(format_ident!("NOT_ZERO_SIZED"));
    let zero_sized = format!(
        "`{type_name}` is zero-sized: a zero-sized type cannot be placed in shared memory; add a \
         field that is not zero-sized"
    );
    let panic = panic_path(p, ident.span());
    bodies.push(quote_spanned! {ident.span()=>
        if #p::size_of::<#subject>() == 0 {
            #panic!("{}", #zero_sized);
        }
    });

    if !g.is_generic {
        return quote!(#(const _: () = #bodies;)*);
    }
    let (impl_generics, _, where_clause) = g.input.generics.split_for_impl();
    let self_ty = &g.self_ty;
    quote! {
        #[doc(hidden)]
        trait #trait_name {
            #(const #names: ();)*
            /// Forces every check above.
            const ALL: ();
        }
        #[automatically_derived]
        impl #impl_generics #trait_name for #self_ty #where_clause {
            #(const #names: () = #bodies;)*
            const ALL: () = { #(let () = <Self as #trait_name>::#names;)* };
        }
    }
}

/// `::shmchan::__private::panic` with every token spanned at `span`: rustc reports a const panic
/// at the span of the `panic!` invocation, which must be the field at fault, not the derive.
fn panic_path(p: &TokenStream, span: proc_macro2::Span) -> TokenStream {
    super::respan(quote!(#p::panic), span)
}

/// Evaluates to `()` after forcing every layout check (used where a generic struct is
/// instantiated).
pub fn force_all(g: &Gen<'_, '_>) -> TokenStream {
    let trait_name = format_ident!("{}", CHECKS_TRAIT);
    let self_ty = &g.self_ty;
    quote!(<#self_ty as #trait_name>::ALL)
}

/// The `const LAYOUT: Layout = ...;` item of the trait impl.
pub fn layout_const(g: &Gen<'_, '_>) -> TokenStream {
    let p = &g.private;
    let type_name = g.input.ident.to_string();
    let fields = g.input.fields().iter().map(|f| {
        let name = &f.name;
        let member = &f.member;
        let ty = f.ty;
        quote_spanned! {ty.span()=>
            #p::Field {
                name: #name,
                offset: #p::offset_of!(Self, #member),
                size: #p::size_of::<#ty>(),
                ty: <#ty as #p::ShmSafe>::DESC,
            }
        }
    });
    let force = if g.is_generic {
        let all = force_all(g);
        quote!(let () = #all;)
    } else {
        TokenStream::new()
    };
    quote! {
        const LAYOUT: #p::Layout = {
            #force
            #p::Layout {
                type_name: #type_name,
                size: #p::size_of::<Self>(),
                align: #p::align_of::<Self>(),
                fields: &[#(#fields),*],
            }
        };
    }
}
