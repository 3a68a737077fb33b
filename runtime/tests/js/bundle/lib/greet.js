import { prefix } from "./prefix.js";
export function greet(name) { return prefix + name; }
