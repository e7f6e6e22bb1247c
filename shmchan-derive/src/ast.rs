//! Our own model of the derive input: the struct's name, generics, `repr`, fields and options,
//! with the spans that errors point at. Building it never fails: malformed attributes are
//! recorded in the [`Ctxt`] and parsing goes on, so that every problem is reported at once.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::validate::Ctxt;

/// A parsed `#[derive(ShmSafe)]` input.
pub struct Input<'a> {
    pub ident: &'a syn::Ident,
    pub vis: &'a syn::Visibility,
    pub generics: &'a syn::Generics,
    pub data: Data<'a>,
    pub repr: Repr,
    /// `#[shmchan(crate = "path")]`: where the runtime crate is, when it was renamed.
    pub krate: syn::Path,
}

/// What kind of item the derive was put on.
pub enum Data<'a> {
    Struct {
        style: Style,
        fields: Vec<Field<'a>>,
        /// The braces / parentheses, or the name of a unit struct.
        fields_span: Span,
    },
    /// The `enum` keyword.
    Enum(Span),
    /// The `union` keyword.
    Union(Span),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Named,
    Tuple,
    Unit,
}

/// One struct field.
pub struct Field<'a> {
    /// `self.price` or `self.0`.
    pub member: syn::Member,
    pub ty: &'a syn::Type,
    /// The whole field, for errors about the field itself.
    pub span: Span,
    /// The name recorded in the layout: `"price"` or `"0"`.
    pub name: String,
    /// The getter: `price` (raw identifiers kept) or `_0`.
    pub getter: syn::Ident,
    /// The setter: `set_price` or `set_0`.
    pub setter: syn::Ident,
    /// Named fields starting with `_` (explicit padding) get no accessors.
    pub has_accessors: bool,
    /// The field's visibility, given to its getter and setter: a view exposes no more than the
    /// struct does.
    pub vis: &'a syn::Visibility,
}

/// Everything found in the struct's `#[repr(...)]` attributes.
#[derive(Default)]
pub struct Repr {
    pub c: Option<Span>,
    pub transparent: Option<Span>,
    pub packed: Option<Span>,
    pub align: Option<Span>,
    pub rust: Option<Span>,
    /// `repr(u8)`, `repr(simd)`...: (span, what was written).
    pub other: Vec<(Span, String)>,
}

impl Repr {
    /// `repr(C)` or `repr(transparent)`: a layout fixed by the language.
    pub fn is_fixed(&self) -> bool {
        self.c.is_some() || self.transparent.is_some()
    }
}

impl<'a> Input<'a> {
    pub fn from_syn(input: &'a syn::DeriveInput, cx: &mut Ctxt) -> Input<'a> {
        let data = match &input.data {
            syn::Data::Struct(s) => {
                let (style, fields_span) = match &s.fields {
                    syn::Fields::Named(f) => (Style::Named, f.brace_token.span.join()),
                    syn::Fields::Unnamed(f) => (Style::Tuple, f.paren_token.span.join()),
                    syn::Fields::Unit => (Style::Unit, input.ident.span()),
                };
                let fields = s.fields.iter().enumerate().map(Field::from_syn).collect();
                Data::Struct {
                    style,
                    fields,
                    fields_span,
                }
            }
            syn::Data::Enum(e) => Data::Enum(e.enum_token.span),
            syn::Data::Union(u) => Data::Union(u.union_token.span),
        };
        Input {
            ident: &input.ident,
            vis: &input.vis,
            generics: &input.generics,
            data,
            repr: parse_repr(&input.attrs, cx),
            krate: parse_options(&input.attrs, cx),
        }
    }

    /// The struct's fields (none for enums and unions).
    pub fn fields(&self) -> &[Field<'a>] {
        match &self.data {
            Data::Struct { fields, .. } => fields,
            Data::Enum(_) | Data::Union(_) => &[],
        }
    }
}

impl<'a> Field<'a> {
    fn from_syn((index, field): (usize, &'a syn::Field)) -> Field<'a> {
        let span = field.span();
        match &field.ident {
            Some(ident) => {
                let name = ident.unraw().to_string();
                Field {
                    member: syn::Member::Named(ident.clone()),
                    ty: &field.ty,
                    span,
                    has_accessors: !name.starts_with('_'),
                    vis: &field.vis,
                    getter: ident.clone(),
                    setter: syn::Ident::new(&format!("set_{name}"), ident.span()),
                    name,
                }
            }
            None => {
                let at = field.ty.span();
                Field {
                    member: syn::Member::Unnamed(syn::Index {
                        index: index as u32,
                        span: at,
                    }),
                    ty: &field.ty,
                    span,
                    name: index.to_string(),
                    getter: syn::Ident::new(&format!("_{index}"), at),
                    setter: syn::Ident::new(&format!("set_{index}"), at),
                    has_accessors: true,
                    vis: &field.vis,
                }
            }
        }
    }
}

fn parse_repr(attrs: &[syn::Attribute], cx: &mut Ctxt) -> Repr {
    let mut repr = Repr::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("repr")) {
        let parsed = attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            let word = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            match word.as_str() {
                "C" => repr.c = Some(span),
                "transparent" => repr.transparent = Some(span),
                "Rust" => repr.rust = Some(span),
                "packed" | "align" => {
                    // `packed`, `packed(N)`, `align(N)`: the argument does not matter to us.
                    if meta.input.peek(syn::token::Paren) {
                        let content;
                        syn::parenthesized!(content in meta.input);
                        content.parse::<proc_macro2::TokenStream>()?;
                    }
                    if word == "packed" {
                        repr.packed = Some(span);
                    } else {
                        repr.align = Some(span);
                    }
                }
                _ => {
                    if meta.input.peek(syn::token::Paren) {
                        let content;
                        syn::parenthesized!(content in meta.input);
                        content.parse::<proc_macro2::TokenStream>()?;
                    }
                    repr.other.push((span, word));
                }
            }
            Ok(())
        });
        if let Err(e) = parsed {
            cx.push(e);
        }
    }
    repr
}

/// `#[shmchan(crate = "path")]`; defaults to `::shmchan`.
fn parse_options(attrs: &[syn::Attribute], cx: &mut Ctxt) -> syn::Path {
    let mut krate: syn::Path = syn::parse_quote!(::shmchan);
    for attr in attrs.iter().filter(|a| a.path().is_ident("shmchan")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                krate = lit.parse()?;
                Ok(())
            } else {
                Err(meta.error(
                    "unknown `shmchan` option; the only option is `#[shmchan(crate = \"path::to::shmchan\")]`",
                ))
            }
        });
        if let Err(e) = parsed {
            cx.push(e);
        }
    }
    krate
}
