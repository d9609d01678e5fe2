import Foundation
import TickwireTestSupport
import Testing
import TickwireCore
@testable import TickwireStore

@Suite struct ExportTests {
    let ev = Events()

    /// Writes an Arrow file and reads it back with pyarrow (skipped when python3 or pyarrow is missing).
    @Test func pyarrowReadsTheExportedFile() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(1), known: t(1.5), bid: 100, ask: 101),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(2), price: 100, id: 1),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(9), price: 102, id: 1),
        ] + (0..<70_000).map { ev.quote("MD.XNAS.MSFT.QUOTE", at: t(3 + Double($0) * 0.001), known: t(4), bid: 7, ask: 8) }, to: dir)
        let file = dir + "/out.arrow"
        let rows = try ArrowExport.write(StoreReader(directory: dir), StoreQuery(subjects: ">", from: "2026-01-05", to: "2026-01-06", asOf: t(5).description), to: file)
        #expect(rows == 70_002)
        let script = """
            import sys, pyarrow.ipc as ipc
            t = ipc.open_file(sys.argv[1]).read_all()
            print(t.num_rows, t.schema.field('event_time').type, t.column('subject')[0], t.column('kind')[1], t.column('a')[1], t.column('known_time')[0].value)
            """
        guard let p = try? ChildProcess("/usr/bin/env", ["python3", "-c", script, file]) else { return }
        let status = p.wait(seconds: 120)
        let out = p.stdout
        if status != 0 && out.isEmpty { return }  // no pyarrow here
        #expect(out == "70002 timestamp[ns, tz=UTC] MD.XNAS.AAPL.QUOTE TRADE 100000000 \(t(1.5).rawValue)\n")
    }
}
