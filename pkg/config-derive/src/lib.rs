//! `#[derive(Documented)]` for configuration sections: the help line of each key is
//! the first paragraph of its field's doc comment, so `-help` never repeats (or drifts
//! from) what the code documents. See `ember_config::Documented`.
//!
//! A field whose type is itself a section (any type deriving `Documented`) answers
//! for the keys below it; every other type is a leaf. Enums derive an empty impl, so
//! they can be leaves too.

use proc_macro::TokenStream;
use quote::quote;
use syn::{Attribute, Data, DeriveInput, Expr, Fields, Lit, Meta, parse_macro_input};

/// Implements `ember_config::Documented` from the doc comments of a struct's fields.
#[proc_macro_derive(Documented)]
pub fn derive_documented(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let body = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => {
                let arms = fields.named.iter().map(|field| {
                    let key = field.ident.as_ref().expect("named field").to_string();
                    let key = key.strip_prefix("r#").unwrap_or(&key).to_string();
                    let ty = &field.ty;
                    let help = help_line(&field.attrs);
                    quote! {
                        (#key, None) => Some(#help),
                        (#key, Some(rest)) => <#ty as ::ember_config::Documented>::key_help(rest),
                    }
                });
                quote! {
                    fn key_help(path: &str) -> Option<&'static str> {
                        let (key, rest) = match path.split_once('.') {
                            Some((key, rest)) => (key, Some(rest)),
                            None => (path, None),
                        };
                        match (key, rest) {
                            #(#arms)*
                            _ => None,
                        }
                    }
                }
            }
            _ => {
                return syn::Error::new_spanned(name, "Documented needs named fields")
                    .to_compile_error()
                    .into();
            }
        },
        // An enum is a leaf: its variants are values, not keys.
        Data::Enum(_) => quote! {},
        Data::Union(_) => {
            return syn::Error::new_spanned(name, "Documented does not support unions")
                .to_compile_error()
                .into();
        }
    };
    quote! {
        impl #impl_generics ::ember_config::Documented for #name #type_generics #where_clause {
            #body
        }
    }
    .into()
}

/// Returns the first paragraph of the doc comment, on one line.
fn help_line(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        let Meta::NameValue(meta) = &attr.meta else {
            continue;
        };
        if !meta.path.is_ident("doc") {
            continue;
        }
        if let Expr::Lit(expr) = &meta.value
            && let Lit::Str(text) = &expr.lit
        {
            lines.push(text.value());
        }
    }
    lines
        .iter()
        .map(|line| line.trim())
        .take_while(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
