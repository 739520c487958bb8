// Segment's Node SDK (@segment/analytics-node), set up as its README says, with only the
// host and the write key changed. Reads {host, writeKey, calls: [{call, args}]} on stdin
// (call: "page", "identify" or "track"; args as the SDK takes them), makes each call,
// flushes, and prints {requests, statuses, errors}: every request body the SDK sent (for
// the test to send again, as a retry would) and what the api answered.
import { Analytics } from '@segment/analytics-node'

let input = ''
for await (const chunk of process.stdin) input += chunk
const { host, writeKey, calls } = JSON.parse(input)

const analytics = new Analytics({ writeKey, host })
const requests = []
const statuses = []
const errors = []
analytics.on('http_request', (request) => requests.push(JSON.parse(request.body)))
analytics.on('http_response', (response) => statuses.push(response.status))
analytics.on('error', (error) => errors.push(String(error.reason ?? error.code ?? error)))

for (const { call, args } of calls) {
  analytics[call](args)
}
await analytics.closeAndFlush()
process.stdout.write(JSON.stringify({ requests, statuses, errors }))
