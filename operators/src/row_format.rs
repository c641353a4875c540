//! Rows kept in Arrow's row format (a byte string per row, comparable and hashable) turned
//! back into columns.

use arrow::array::ArrayRef;
use arrow::row::RowConverter;

use crate::error::Result;

/// The columns of `rows`, each encoded by `converter`.
pub fn decode_rows<'a>(
    converter: &RowConverter,
    rows: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<ArrayRef>> {
    let parser = converter.parser();
    Ok(converter.convert_rows(rows.into_iter().map(|r| parser.parse(r)))?)
}

/// The rows in `bytes` that end at `ends`, one after another (rows gathered into one buffer).
pub fn slices<'a>(bytes: &'a [u8], ends: &'a [usize]) -> impl Iterator<Item = &'a [u8]> {
    let starts = std::iter::once(0).chain(ends.iter().copied());
    starts.zip(ends).map(|(start, &end)| &bytes[start..end])
}
