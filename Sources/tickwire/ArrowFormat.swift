import ArgumentParser
import TickwireStore

extension ArrowWriter.Layout {
    /// The layout `--format` names for `replay` and `query asof-join`: `arrow` the IPC stream (standard output or
    /// `--out`), `arrow-file` the IPC file format, which ends with an index and so needs `--out`; nil for any
    /// other format.
    init?(format: String, out: String?) throws {
        switch format {
        case "arrow": self = .stream
        case "arrow-file":
            guard out != nil else { throw ValidationError("--format arrow-file needs --out (the file format ends with an index)") }
            self = .file
        default: return nil
        }
    }
}

/// `--arrow-decimal`, for every command that writes Arrow: the width of the decimal(18,8) columns.
struct ArrowDecimalOption: ParsableArguments {
    @Option(name: .customLong("arrow-decimal"),
            help: "Bits of the Arrow decimal(18,8) columns: 64 (half the bytes; readers of Arrow 18 or later: pyarrow >= 18, polars, DuckDB) or 128 (any Arrow reader).")
    var bits: Int = 64

    func validate() throws {
        guard ArrowWriter.Decimals(rawValue: bits) != nil else { throw ValidationError("--arrow-decimal must be 64 or 128, not \(bits)") }
    }

    var decimals: ArrowWriter.Decimals { ArrowWriter.Decimals(rawValue: bits)! }
}
