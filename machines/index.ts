/**
 * The pure statechart layer. It holds no code yet: the actor-runtime issue adds the chart
 * composer (role manifest -> machine config) and its vocabulary here. See README.md.
 */
export {};
