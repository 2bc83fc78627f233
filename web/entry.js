// What the map page imports: the scatterplot factory and its helpers.
export { default as createScatterplot, createRenderer } from "regl-scatterplot";
