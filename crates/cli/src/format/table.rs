//! Go's `text/tabwriter` as docker's formatter configures it: minimum cell
//! width 10, padding 3, spaces, left-aligned. A cell ends at a tab; the text
//! after a line's last tab is not aligned. Column widths are computed per
//! block of consecutive lines that have the column, like tabwriter does.

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// Cells live in one buffer: a table of 10,000 rows costs a handful of
/// allocations, not one per cell.
#[derive(Default)]
pub struct Table {
    text: String,
    /// Per cell: byte range in `text` and display width.
    cells: Vec<(usize, usize, usize)>,
    /// Per line: range of its cells in `cells`.
    lines: Vec<(usize, usize)>,
    /// 0: docker's formatter's 10.
    min_width: usize,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// A table whose cells are at least `min_width` wide (`docker top`'s 20).
    pub fn with_min_width(min_width: usize) -> Table {
        Table { min_width, ..Table::default() }
    }

    /// Adds text: `\t` separates cells, `\n` starts further lines.
    pub fn push(&mut self, text: &str) {
        for line in text.split('\n') {
            let first = self.cells.len();
            for cell in line.split('\t') {
                self.add_cell(cell);
            }
            self.lines.push((first, self.cells.len()));
        }
    }

    /// Adds one line made of `cells`.
    pub fn push_cells(&mut self, cells: &[&str]) {
        let first = self.cells.len();
        for cell in cells {
            self.add_cell(cell);
        }
        self.lines.push((first, self.cells.len()));
    }

    fn add_cell(&mut self, cell: &str) {
        let start = self.text.len();
        self.text.push_str(cell);
        let width = if cell.is_ascii() { cell.len() } else { cell.chars().count() };
        self.cells.push((start, self.text.len(), width));
    }

    fn cell_count(&self, line: usize) -> usize {
        let (a, b) = self.lines[line];
        b - a
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.text.len() * 2);
        let mut widths = Vec::new();
        self.format(&mut out, &mut widths, 0, self.lines.len());
        out
    }

    fn format(&self, out: &mut String, widths: &mut Vec<usize>, mut line0: usize, line1: usize) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.cell_count(this) {
                this += 1;
                continue;
            }
            // A block of lines with a cell in this column starts here.
            self.write_lines(out, widths, line0, this);
            line0 = this;
            let mut width = if self.min_width == 0 { MIN_WIDTH } else { self.min_width };
            while this < line1 && column + 1 < self.cell_count(this) {
                width = width.max(self.cells[self.lines[this].0 + column].2 + PADDING);
                this += 1;
            }
            widths.push(width);
            self.format(out, widths, line0, this);
            widths.pop();
            line0 = this;
        }
        self.write_lines(out, widths, line0, line1);
    }

    fn write_lines(&self, out: &mut String, widths: &[usize], line0: usize, line1: usize) {
        for &(first, end) in &self.lines[line0..line1] {
            for (j, &(a, b, width)) in self.cells[first..end].iter().enumerate() {
                out.push_str(&self.text[a..b]);
                if let Some(&w) = widths.get(j) {
                    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width)));
                }
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_like_docker() {
        let mut t = Table::new();
        t.push("REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE");
        t.push("busybox\tlocal\ta2e664b69a19\t2 minutes ago\t1.99MB");
        t.push("other/bb\t1\ta2e664b69a19\t2 minutes ago\t1.99MB");
        assert_eq!(
            t.render(),
            "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE\n\
             busybox      local     a2e664b69a19   2 minutes ago   1.99MB\n\
             other/bb     1         a2e664b69a19   2 minutes ago   1.99MB\n"
        );
    }

    #[test]
    fn trailing_empty_cell_pads_the_previous_column() {
        let mut t = Table::new();
        t.push("IMAGE\tSIZE\tCOMMENT");
        t.push("<missing>\t0B\t");
        assert_eq!(t.render(), "IMAGE       SIZE      COMMENT\n<missing>   0B        \n");
    }
}
