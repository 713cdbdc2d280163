// Vercel's AI SDK as a client of the gateway (tests/e2e/test_ai_sdk.py runs it with node).
//
// The default provider of @ai-sdk/openai, `openai(model)`, speaks the Responses API (POST {baseURL}/responses).
// One run: generateText and then streamText, each with one tool the model is asked to call and whose result it
// then answers from (two steps). Prints one JSON line with what each call returned, for the test to check.
// Env: GATEWAY_URL (http://127.0.0.1:PORT/v1), GATEWAY_KEY, MODEL (the gateway alias).
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import { createOpenAI } from "@ai-sdk/openai";

const openai = createOpenAI({ baseURL: process.env.GATEWAY_URL, apiKey: process.env.GATEWAY_KEY });
const model = openai(process.env.MODEL);
const calls = [];
const tools = {
  get_weather: tool({
    description: "Weather in a city",
    inputSchema: jsonSchema({
      type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false,
    }),
    execute: async ({ city }) => {
      calls.push(city);
      return `sunny in ${city}`;
    },
  }),
};
const prompt = "What is the weather in Paris? Use get_weather";

const generated = await generateText({ model, prompt, tools, stopWhen: stepCountIs(3), maxRetries: 0 });
const streamed = streamText({ model, prompt, tools, stopWhen: stepCountIs(3), maxRetries: 0 });
const deltas = [];
for await (const part of streamed.fullStream) {
  if (part.type === "text-delta") deltas.push(part.text);
  if (part.type === "error") throw part.error;
}
console.log(JSON.stringify({
  generate: {
    text: generated.text, steps: generated.steps.length, finishReason: generated.finishReason,
    toolCalls: generated.steps.flatMap((step) => step.toolCalls.map((call) => call.toolName)),
    outputTokens: generated.totalUsage.outputTokens, responseId: generated.response.id,
  },
  stream: {
    text: await streamed.text, deltas: deltas.length, steps: (await streamed.steps).length,
    finishReason: await streamed.finishReason,
    toolCalls: (await streamed.steps).flatMap((step) => step.toolCalls.map((call) => call.toolName)),
  },
  executed: calls,
}));
