//! Every check that can be made on the syntax alone. All errors are accumulated in a [`Ctxt`] and
//! reported together; what only the compiler knows (sizes, offsets, whether a named type is
//! `ShmSafe`) is checked by the code `expand` generates.

use proc_macro2::Span;
use std::collections::HashMap;

use crate::ast::{Data, Input, Style};

/// Collects errors instead of stopping at the first one.
pub struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    pub fn new() -> Ctxt {
        Ctxt { errors: Vec::new() }
    }

    pub fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// `Ok` when nothing was reported, else every error combined into one.
    pub fn finish(self) -> Result<(), syn::Error> {
        let mut errors = self.errors.into_iter();
        match errors.next() {
            None => Ok(()),
            Some(mut first) => {
                first.extend(errors);
                Err(first)
            }
        }
    }
}

/// Methods every generated view defines itself; a field getter or setter may not reuse them.
const VIEW_METHODS: &[&str] = &[
    "new",
    "from_raw",
    "as_ptr",
    "as_mut_ptr",
    "get",
    "store",
    "as_view",
];

pub fn check(input: &Input<'_>, cx: &mut Ctxt) {
    let name = input.ident;
    match &input.data {
        Data::Enum(span) => cx.error(
            *span,
            format_args!(
                "`ShmSafe` cannot be derived for enum `{name}`: another process may write any \
                 value into its discriminant, and an invalid discriminant is undefined behaviour; \
                 store the discriminant in a `u8`/`u32` field of a `#[repr(C)]` struct and \
                 convert it with `TryFrom` when reading"
            ),
        ),
        Data::Union(span) => cx.error(
            *span,
            format_args!(
                "`ShmSafe` cannot be derived for union `{name}`: nothing tells another process \
                 which field is valid; use a `#[repr(C)]` struct with a tag field, or a byte \
                 array `[u8; N]` that you decode"
            ),
        ),
        Data::Struct {
            style,
            fields,
            fields_span,
        } => {
            check_repr(input, cx);
            if *style == Style::Unit || fields.is_empty() {
                cx.error(
                    *fields_span,
                    format_args!(
                        "`{name}` has no fields: a zero-sized type cannot be placed in shared \
                         memory; add at least one field"
                    ),
                );
            }
            for field in fields {
                if let Some((ty, why)) = refused_type(field.ty) {
                    cx.push(syn::Error::new_spanned(ty, why));
                }
            }
            check_accessor_names(input, cx);
        }
    }
    check_generics(input, cx);
}

fn check_repr(input: &Input<'_>, cx: &mut Ctxt) {
    let repr = &input.repr;
    let name = input.ident;
    if let Some(span) = repr.packed {
        cx.error(
            span,
            "`repr(packed)` is refused: packed fields are unaligned, so they cannot be read or \
             written atomically or through aligned pointers; remove `packed` and make the \
             padding explicit with fields such as `_pad: [u8; 3]`",
        );
    }
    if let Some(span) = repr.rust {
        cx.error(
            span,
            "`repr(Rust)` lets the compiler reorder fields, so two builds may disagree on the \
             layout; use `#[repr(C)]`",
        );
    }
    for (span, what) in &repr.other {
        cx.error(
            *span,
            format_args!(
                "`repr({what})` is not supported by `#[derive(ShmSafe)]`; use `#[repr(C)]` \
                 (optionally with `align(N)`) or `#[repr(transparent)]`"
            ),
        );
    }
    if !repr.is_fixed() && repr.rust.is_none() {
        cx.error(
            name.span(),
            format_args!(
                "`{name}` needs `#[repr(C)]` to derive `ShmSafe`: without it the compiler chooses \
                 the field order and padding, which may differ between builds; add `#[repr(C)]` \
                 (or `#[repr(transparent)]` for a single-field wrapper) above the struct"
            ),
        );
    }
}

/// A field type refused by its very name, with the reason and the fix. Other non-`ShmSafe` types
/// are caught by the trait bound the expansion puts on every field. Returns the offending (part
/// of the) type, for the error's span.
pub fn refused_type(ty: &syn::Type) -> Option<(&syn::Type, String)> {
    let why = match ty {
        syn::Type::Reference(_) => {
            "references cannot be placed in shared memory: an address means \
             nothing in another process; store an index or an offset (`u32`/`u64`) into the \
             segment, or copy the data into a fixed-size array"
                .to_string()
        }
        syn::Type::Ptr(_) => "raw pointers cannot be placed in shared memory: an address means \
             nothing in another process; store an index or an offset (`u32`/`u64`) into the \
             segment instead"
            .to_string(),
        syn::Type::BareFn(_) => "function pointers cannot be placed in shared memory: code \
             addresses differ between processes; store a `u32` that selects the function"
            .to_string(),
        syn::Type::Slice(_) | syn::Type::TraitObject(_) | syn::Type::ImplTrait(_) => {
            "unsized types cannot be placed in shared memory; use a fixed-size array `[T; N]` \
             with a length field"
                .to_string()
        }
        syn::Type::Tuple(t) if t.elems.is_empty() => "`()` is zero-sized and holds nothing; \
             remove the field"
            .to_string(),
        syn::Type::Tuple(_) => "tuples have no guaranteed layout (they are `repr(Rust)`); use a \
             `#[repr(C)]` struct deriving `ShmSafe`, or an array"
            .to_string(),
        syn::Type::Never(_) => "`!` has no values; remove the field".to_string(),
        syn::Type::Array(a) => return refused_type(&a.elem),
        syn::Type::Paren(p) => return refused_type(&p.elem),
        syn::Type::Group(g) => return refused_type(&g.elem),
        syn::Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            refused_path(&last.ident.to_string(), last.arguments.is_empty())?
        }
        _ => return None,
    };
    Some((ty, why))
}

fn refused_path(name: &str, no_arguments: bool) -> Option<String> {
    let why = match (name, no_arguments) {
        ("bool", true) => {
            "`bool` cannot be placed in shared memory: any byte other than 0 or 1 \
             is undefined behaviour, and another process can write any byte; store a `u8` and \
             test it with `!= 0`"
        }
        ("char", true) => {
            "`char` cannot be placed in shared memory: most `u32` values are not \
             valid `char`s, and another process can write any; store a `u32` and convert it \
             with `char::from_u32`"
        }
        ("str", true) => {
            "`str` is unsized and cannot be placed in shared memory; store the bytes \
             in a fixed-size `[u8; N]` with a length field"
        }
        ("String", _) => {
            "`String` points to heap memory of one process; store the bytes in a \
             fixed-size `[u8; N]` with a length field"
        }
        ("Vec", _) | ("VecDeque", _) => {
            "`Vec` points to heap memory of one process; use a \
             fixed-size array `[T; N]` with a length field"
        }
        ("Box", _) | ("Rc", _) | ("Arc", _) => {
            "smart pointers point to heap memory of one \
             process; store the value itself inline"
        }
        ("Option", _) => {
            "`Option<T>` has a discriminant (or a niche) that another process could \
             set to an invalid value; store the value together with a `u8` \"present\" flag"
        }
        ("PhantomData", _) => {
            "`PhantomData` is zero-sized and holds nothing to share; remove \
             the field"
        }
        ("Cell", _) | ("RefCell", _) | ("UnsafeCell", _) | ("Mutex", _) | ("RwLock", _) => {
            "interior-mutability and lock types are process-local; share the plain value and \
             let shmchan's `SeqLock` or `FcntlLock` protect it"
        }
        _ => return None,
    };
    Some(why.to_string())
}

fn check_generics(input: &Input<'_>, cx: &mut Ctxt) {
    let generics = input.generics;
    for lt in generics.lifetimes() {
        cx.error(
            lt.lifetime.span(),
            format_args!(
                "`ShmSafe` types cannot borrow (`{}`): a reference is an address, meaningless in \
                 another process; remove the lifetime parameter",
                lt.lifetime
            ),
        );
    }
    for param in generics.type_params() {
        let ident = &param.ident;
        let inline = param.bounds.iter().any(is_shm_safe_bound);
        let in_where = generics.where_clause.as_ref().is_some_and(|w| {
            w.predicates.iter().any(|p| match p {
                syn::WherePredicate::Type(t) => {
                    matches!(&t.bounded_ty, syn::Type::Path(tp)
                        if tp.qself.is_none() && tp.path.is_ident(ident))
                        && t.bounds.iter().any(is_shm_safe_bound)
                }
                _ => false,
            })
        });
        if !inline && !in_where {
            cx.error(
                ident.span(),
                format_args!(
                    "generic parameter `{ident}` needs a `ShmSafe` bound, or the struct could \
                     hold a pointer or padding through it; write `{ident}: shmchan::ShmSafe`"
                ),
            );
        }
    }
}

fn is_shm_safe_bound(bound: &syn::TypeParamBound) -> bool {
    match bound {
        syn::TypeParamBound::Trait(t) => {
            t.path.segments.last().is_some_and(|s| s.ident == "ShmSafe")
        }
        _ => false,
    }
}

/// Getters and setters share the views' namespace with the views' own methods and each other.
fn check_accessor_names(input: &Input<'_>, cx: &mut Ctxt) {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for field in input.fields().iter().filter(|f| f.has_accessors) {
        for method in [&field.getter, &field.setter] {
            let method_name = syn::ext::IdentExt::unraw(method).to_string();
            if VIEW_METHODS.contains(&method_name.as_str()) {
                cx.error(
                    field.span,
                    format_args!(
                        "field `{}` would generate the view method `{method_name}`, which the \
                         views already define; rename the field",
                        field.name
                    ),
                );
            } else if let Some(other) = seen.insert(method_name.clone(), &field.name) {
                cx.error(
                    field.span,
                    format_args!(
                        "fields `{other}` and `{}` would both generate the view method \
                         `{method_name}`; rename one of them",
                        field.name
                    ),
                );
            }
        }
    }
}
