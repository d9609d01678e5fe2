import Foundation
import TickwireStore

extension StoreReader {
    /// Ends a command that read the store: warns on standard error of each damaged region the read skipped (its
    /// file and byte offset), then fails with the first one, so the command exits non-zero even though every
    /// intact event was written.
    /// - Throws: `StoreError.corrupt` when the read skipped damage.
    func finishRead(command: String) throws {
        for d in damage { FileHandle.standardError.write(Data("tickwire \(command): warning: \(d)\n".utf8)) }
        try checkIntact()
    }
}
