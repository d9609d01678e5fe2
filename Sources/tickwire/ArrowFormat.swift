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
