import Foundation
import Testing
import TickwireCore
@testable import TickwireFeeds

@Suite struct PrintingSinkTests {
    @Test func decodePrintsTailJSONLNumberedPerSubject() throws {
        let path = Fixture.scratch("decoded.jsonl", [])
        let fd = open(path, O_WRONLY | O_TRUNC)
        #expect(fd >= 0)
        let sink = PrintingSink(format: .jsonl, fd: fd)
        try ITCHFileSource(path: Fixture.itchSlice).run(into: sink, stop: StopSignal())
        sink.flush()
        close(fd)
        let lines = String(decoding: Fixture.bytes(path), as: UTF8.self).split(separator: "\n")
        #expect(lines.count == Int(sink.count))
        #expect(lines[0] == #"{"subject":"MD.XNAS._FEED.STATUS","kind":"STATUS","seq":1,"subject_seq":1,"event_time":1577716200000075566,"known_time":1577716200000075566,"category":"system","state":"Q","reason":""}"#)
        let roku = lines.filter { $0.contains("MD.XNAS.ROKU.TRADE") }
        #expect(roku.count == 1)
        #expect(roku[0].hasSuffix(#""price":137.7,"size":84,"side":"sell","trade_id":53487}"#))
        // subject_seq counts per subject: the n-th line of a subject carries n.
        var perSubject: [Substring: Int] = [:]
        for (i, line) in lines.enumerated() {
            let subject = line.split(separator: "\"")[3]
            perSubject[subject, default: 0] += 1
            #expect(line.contains("\"seq\":\(i + 1),\"subject_seq\":\(perSubject[subject]!),"))
        }
    }
}
